// Anchor for the shared precompiled header of in-tree plugins.
