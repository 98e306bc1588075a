"""The composition root: the run config that assembles every family, the chain builder, the generation recipe, the CLI.

The only code under pipeline/ that imports the stage families (generators, filters, trainers, flows)."""
