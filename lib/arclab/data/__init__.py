"""SynthFaces generator, protocols and real-format readers."""
