"""How anything is trained: ``train`` (the one loop, ``fit``), ``costs`` (time, memory,
what autograd keeps) and ``launch`` (processes joined by ``torch.distributed``)."""
