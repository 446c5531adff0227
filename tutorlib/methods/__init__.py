"""One kit per method lesson: ``prompts`` (CoOp), ``restore`` (RESTORE), ``inversion``
(OTI and OVI), ``progressive`` (OneEncoder) and ``fewpairs`` (freeze-align, CWCL,
STRUCTURE)."""
