"""Studies built on the whole pipeline: the default study (:mod:`.default`), the flatness
study (:mod:`.flatness`: sharpness against analog accuracy drop across runs), the robustness study
(:mod:`.robustness`: every training method over training seeds on PCM and RRAM, ``analogsam study
robustness``) and the memory-fault study (:mod:`.faults`), the last two on one scaffold
(:mod:`.scaffold`: the training recipe, the study folder, where each network lives and whether it is
finished)."""
