"""The trained-once models, each with its recipe and one cached getter: ``pretrained``
(the course mini-CLIP), ``unimodal`` (backbones pretrained on one modality),
``selfsup`` (a SimCLR image encoder) and ``minilm`` (the real all-MiniLM-L6-v2)."""
