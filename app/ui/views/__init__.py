"""The screens of the Flet app, one a file; `base` holds what they share, `shell` the frame."""
