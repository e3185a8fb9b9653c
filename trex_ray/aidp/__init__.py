"""AIDP: the data-recipe toolkit. A recipe is an ordered list of named operators with typed arguments
(`trex_ray.plan.Recipe`); `trex_ray.aidp.ops.OPS` is the one registry of operators, and
`trex_ray.aidp.pipeline.run_recipe` executes a recipe as a Ray Data pipeline cached by its hash.
"""
