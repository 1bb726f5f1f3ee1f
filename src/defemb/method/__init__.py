"""DefinitionEMB: masking per architecture, the model (body + W), training, embedding."""
