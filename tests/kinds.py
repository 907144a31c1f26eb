"""The objective kinds the tests run every property on: one table, each test giving its own sizes."""
import fastfeat as ff

#: population, full-batch empirical, minibatch empirical, online SGD with batch 1 (the blocked path) and a
#: small batch (the batch path)
KINDS = ("population", "empirical", "empirical-minibatch", "online", "online-batch")


def objective(kind, teacher, *, n, batch, seed=2, online_seed=None):
    """The objective of ``kind`` for ``teacher``: ``n`` samples for the empirical kinds (drawn with ``seed``),
    ``batch`` the minibatch and online batch size, ``online_seed`` (default ``seed``) the online stream."""
    online_seed = seed if online_seed is None else online_seed
    if kind == "population":
        return ff.Population(teacher)
    if kind == "empirical":
        return ff.Empirical.sample(teacher, n, seed=seed)
    if kind == "empirical-minibatch":
        return ff.Empirical.sample(teacher, n, seed=seed, batch_size=batch)
    if kind == "online":
        return ff.Online(teacher, batch_size=1, seed=online_seed)
    if kind == "online-batch":
        return ff.Online(teacher, batch_size=batch, seed=online_seed)
    raise ValueError(f"unknown objective kind {kind!r}; known: {KINDS}")
