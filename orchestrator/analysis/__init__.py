"""`migrate analyze`: the seed's migration-risk analysis of agent source, done statically.

Source is read, never imported or run. A file gives one document (SPEC section 6);
a directory gives one per `.py` file, a summary by score and totals. Files that
do not parse are analysed anyway, through a tolerant parser, and say where they
are broken.

One idea per module, in the order the data flows:

========== ================================================================
source     bytes to text; what is skipped as not text; line counts
parsing    an `ast.Module` for broken code too, and every syntax error
names      imports, aliases and file-wide dataflow, from one walk of the tree
sockets    socket creation sites, ZMQ types, bind/connect/send/recv/close
threads    thread and process sites, with target and name
gpu        GPU operations
functions  complexity and critical functions (model, GPU, health)
agents     BaseAgent compliance, and legacy agent classes
scoring    the risk score out of 60, and the table it comes from
sites      the worklist: each site to change and its BaseAgent target
report     one file's document
directory  a path: a file's document, or a tree's reports, summary, totals;
           exclusions, and one analysis per distinct content
compare    two revisions (``--against``): counts, score, sites removed/added
cache      documents by content digest, for the ``analyze`` metric source
render     text (a rich table on a terminal, plain lines in a pipe), Markdown,
           the worklist and the comparison
endpoints  each socket site's port, host or agent, followed through the file
manifests  the system's service manifests; the program's order by units
variants   near copies of one agent's file
graph      ``--graph``: nodes, declared and seen edges, drift, order
graph_render  the graph as text, Markdown, DOT and Mermaid
========== ================================================================
"""

from orchestrator.analysis.directory import analyze_path
from orchestrator.analysis.render import render_markdown, render_text
from orchestrator.analysis.report import analyze_file
from orchestrator.analysis.scoring import risk_score, scoring_table

__all__ = ["analyze_file", "analyze_path", "render_markdown", "render_text", "risk_score",
           "scoring_table"]
