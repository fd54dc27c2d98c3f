"""What a command does end to end (resolve inputs, embed, explain, render, write): the CLI and the
library API call these, so a command and its Python equivalent give the same result."""
