"""What the models are trained to minimise: ``losses`` (CLIP, SigLIP, soft targets,
CWCL), ``mixup`` (m²-mix on the sphere), ``structure`` (STRUCTURE's regulariser),
``binding`` (the Gram volume, GRAM and ImageBind), ``finegrained`` (FILIP; ``tokens``, the
towers' token outputs it compares), ``distributed`` (the losses across processes) and
``objective`` (what fine-tuning minimises, and what each of its batches must carry)."""
