"""The mover catalog: one module per transport behind one small Protocol."""
