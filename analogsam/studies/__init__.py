"""Studies built on the whole pipeline: the default study (:mod:`.default`) and the flatness
study (:mod:`.flatness`: sharpness against analog accuracy drop across runs)."""
