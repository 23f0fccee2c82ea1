"""What the workflow sees in a shot: keys (:mod:`.key` chroma, :mod:`.matanyone`), tri-masks (:mod:`.masks` track, :mod:`.sam2_masks`), depth (:mod:`.depth` classical, :mod:`.depth_model` learned), and one light estimate per shot (:mod:`.light`, with :class:`.light.ShotLight`, the light stage's type). Classical and learned backends sit side by side; the learned ones load lazily, and :mod:`.models` checks their local model files before any job runs (:mod:`.tiny_models` makes random ones for tests).

May import: io and the foundation modules. Never composite, diffusion, or anything above.
"""
