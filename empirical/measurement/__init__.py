"""empirical.measurement: what is measured: trajectories, harm and capability proxies, constant
estimators, Hessian-vector products, head-only harm radii."""
