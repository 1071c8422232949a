"""The embedded default data set: procedurally generated, SYNTHETIC dermoscopy-like images.

Nothing here is a real patient or a real lesion. Each case is a seeded function of
(index, seed) alone, so a set can be generated in parallel, resumed or regenerated bit for bit.

Rendering works in two frames. A lesion is painted on its own "canvas" in lesion units (the
border sits near radius 1), as premultiplied RGBA; every drawing decision made there also
writes the matching finding and colour word, so the record describes exactly what was drawn.
A "view" then places that canvas on a skin background with a rotation, zoom and offset, and
adds hair, lighting and the dermoscope's round field. Two images of one patient can share a
lesion (two views) because the lesion depends only on the lesion's seed.

Pure numpy, vectorised over pixels; no JAX import, so spawned worker processes start quickly.

    distributions   class-conditional tables of the record fields, weighted draws
    drawing         noise, grids, blur, splatting, wandering polylines
    canvas          the lesion canvas: layers, colours, claimed findings, outline, asymmetry
    patterns        dots and globules, network, patches, vessel and streak strokes
    melanocytic     renderers of melanoma and melanocytic nevus
    nonmelanocytic  renderers of the other six groups
    view            skin, placement of the canvas, hair, light and optics
    cases           blocks, patients, lesions and the case record (generate_case)
    writer          the on-disk set (write_dataset)
"""
from dermjax.data.synthetic.cases import BLOCK, DATASET, GENERATOR_VERSION, class_of, generate_case, image_id
from dermjax.data.synthetic.writer import write_dataset

__all__ = ["BLOCK", "DATASET", "GENERATOR_VERSION", "class_of", "generate_case", "image_id", "write_dataset"]
