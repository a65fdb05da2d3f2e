"""The bound algorithms over the graph IR, one implementation each: interval propagation
(``ibp``), backward CROWN (``crown``), alpha-CROWN (``alpha``), forward symbolic mode
(``forward``) and the float32 rounding-error bound (``float32``). Kept apart from
``certprune.graph`` (which owns the per-operator semantics) because the algorithms are
consumers of the IR: robustness verification, ``compute_bounds`` and stability all call them."""
