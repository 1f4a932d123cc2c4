"""ES10a/b/c client over any APDU transport (SGP.22 §5.7, SGP.32 §5.9)."""
