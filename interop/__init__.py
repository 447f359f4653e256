"""utcp's interop catalogue and matrix: scenario modules (`scenario_a` .. `scenario_e`), their vocabulary
(`interop.model`), how they are found (`interop.registry`), run (`interop.runner`) and reported
(`interop.report`). See interop/README.md."""
