"""The screens of the admin TUI: one module each, plus the modal dialogs."""
