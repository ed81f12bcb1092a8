"""Outreach's front ends, in three rooms and a few shared parts:

- `cli/`: the `outreach` command line (`app.cli:main`);
- `ui/`: the Flet UI (entry `app.ui.main`, router, screens, controls, the web gate);
- `services/`: the UI's facade over `models` and `sync` (one `Services` per UI session);
- shared: `state` (the view-models the facade fills and the screens draw, with their no-I/O
  rules; the CLI reads a typed fingerprint with the same rule), `config` (the data folder,
  `AppConfig`), `i18n`, `files` (private folders), `keystore` (the KDF's pepper), and `run`
  (`make run`: the app with a local sync server; `python -m app` is the same).

Imports go one way: `ui` → `services` → `state`, and `cli` and `run` beside them; none imports
`ui` but `run` (which starts it). Nothing in app/ speaks SQL, crypto or HTTP itself.
"""
