"""Simulated analog hardware: device presets (:mod:`.presets`), the aihwkit tile configuration they
build (:mod:`.rpu_config`), conversion of a digital network to aihwkit tiles (:mod:`.conversion`) and
the fast seeded replay of those tiles' forward pass (:mod:`.fast`).

Nothing here knows about training methods, result stores or studies."""
