"""Robustness of a digital network: sharpness metrics (:mod:`.sharpness`) and weight perturbations
and memory faults (:mod:`.perturbations`)."""
