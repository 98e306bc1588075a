"""The FBCIR hard-negatives family: the stage, its candidate pool, the ShapesWorld and photo paths, image editors."""
