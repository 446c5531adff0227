"""One kit per method lesson: ``prompts`` (CoOp), ``restore`` (RESTORE), ``inversion``
(OTI and OVI), ``base_to_novel`` (lesson 03's few-shot, base-to-novel experiment runs) and
``paired`` (intervals over its paired runs), ``progressive`` (OneEncoder) and ``stages`` (its
stage-by-stage evaluation and costs), ``fewpairs`` (freeze-align, CWCL, STRUCTURE) and ``neighbourhoods`` (what
its projectors keep of the frozen neighbourhoods)."""
