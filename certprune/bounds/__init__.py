"""The bound algorithms over the graph IR, one implementation each: interval propagation
(``ibp``), backward CROWN (``crown``) and alpha-CROWN (``alpha``). Kept apart from
``certprune.graph`` (which owns the per-operator semantics) because the algorithms are
consumers of the IR: robustness verification, ``compute_bounds`` and stability all call them."""
