"""How anything is trained: ``train`` (the one loop, ``fit``), ``costs`` (time, memory,
what autograd keeps), ``launch`` (processes joined by ``torch.distributed``) and ``ddp``
(training under ``DistributedDataParallel`` with gathered or own negatives)."""
