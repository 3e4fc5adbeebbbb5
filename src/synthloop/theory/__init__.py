"""Pure closed-form / numerically exact predictions; imports nothing of synthloop.

One module per paper family (``regression`` for iterated least squares, …). Every function is a
pure function of its arguments (randomness, where a function needs it, only through an explicit
seed) and cites the paper and result it implements. Import the submodules directly, e.g.
``from synthloop.theory import regression``.
"""
