"""Studies built on the whole pipeline: the default study (:mod:`.default`), the flatness
study (:mod:`.flatness`: sharpness against analog accuracy drop across runs) and the robustness study
(:mod:`.robustness`: every training method over training seeds on PCM and RRAM, ``analogsam study
robustness``)."""
