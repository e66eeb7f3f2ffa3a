"""Training and fine-tuning (the discriminator, losses, data and the two-stage recipe) will live here; the
training issue fills this package. It builds on `models/` (networks, loading) and `degradation/` (pairs on the fly)."""
