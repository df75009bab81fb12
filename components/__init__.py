"""One thin KFP v2 lightweight component per stage; each calls its stage function in ``ragtune``."""
