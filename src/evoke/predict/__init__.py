"""Stage 7, predict: a trained head applied to new videos (see :mod:`evoke.predict.model` for the
saved model and :mod:`evoke.predict.run` for applying it)."""
