"""Putting the character into the environment without a model: plain :mod:`.over`, the harmonizing compositor (:mod:`.harmonize`: relight, light wrap, cast shadows, contact), and the tri-mask and EXR layer conventions of the assembled comp (:mod:`.assemble`).

May import: perception (the light stage's type), io and the foundation modules.
"""
