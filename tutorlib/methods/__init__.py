"""One kit per method lesson: ``prompts`` (CoOp), ``restore`` (RESTORE), ``inversion``
(OTI and OVI), ``progressive`` (OneEncoder) and ``stages`` (its stage-by-stage evaluation
and costs), ``fewpairs`` (freeze-align, CWCL, STRUCTURE)."""
