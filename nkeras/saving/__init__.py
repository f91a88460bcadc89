"""Model files. Weights only so far: ``model.save_weights("w.weights.npz")``."""
