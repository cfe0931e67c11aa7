"""Device presets shipped with analogsam (TOML files; this folder is installed as analogsam.presets)."""
