"""Remote actions: signed commands to classroom agents, with safety rules and an audit."""
