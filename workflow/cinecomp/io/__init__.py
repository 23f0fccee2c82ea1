"""Reading and writing pictures and datasets: OpenEXR (:mod:`.exr`), plates in any format and colourspace (:mod:`.plates`), ingest to scene-linear ACEScg EXR frames (:mod:`.ingest`), and the tar shards of training data (:mod:`.dataset`).

May import: the foundation modules (errors, atomic, colour, frames, params, layout). Nothing above.
"""
