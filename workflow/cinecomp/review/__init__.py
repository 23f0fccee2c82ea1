"""What a supervisor looks at (:mod:`.media`): the MP4 daily with burn-ins and the contact sheet, through an OCIO display view.

May import: io and the foundation modules.
"""
