"""Training and fine-tuning: losses, EMA, the training-pair pool, data, and one iteration of the official recipe
(`step`). Builds on `models/` (networks, the discriminator, loading) and `degradation/` (pairs made on the fly)."""
