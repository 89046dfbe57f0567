"""The usage names of DESIGN.md's partner API, shared by the model (ground truth),
the reference partner and the job (which also accepts names added later)."""

USAGES = (
    "water_heater",
    "heating",
    "fridge",
    "cooking",
    "laundry",
    "lighting",
    "electronics",
    "other",
)
