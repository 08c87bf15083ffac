"""The fused ops of the models, each with backends "auto" | "triton" | "torch" | "reference"."""
