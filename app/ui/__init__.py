"""The Flet UI: `main` (the entry Flet calls once per session; `flet build` runs `app.ui.main`),
`router` (the route table, the session's guards), `navigation` (what a screen may ask of the
router), `views/` (one screen a file), `components/` (reusable controls, no services) and `web`
(the gate in front of Flet's web server). It talks to the device's data only through the facade
(`app.services`) and draws the view-models of `app.state`; it never imports `models` storage,
SQL, crypto or the network stack, and nothing in `app.cli` or `app.services` imports it.
"""
