"""The project's own ground-truth renderer (:mod:`.renderer`, an SDF ray-marcher) and its scenes (:mod:`.scenes`): demo plates, unit-test fixtures and synthetic training data. Its light model is harmonize's own, so it is a fast fixture, never the judge of picture quality (the path-traced set is).

May import: io, camera and the foundation modules.
"""
