"""Convert a percent-format script (# %% / # %% [markdown]) into a stripped .ipynb."""
import sys, nbformat
src, dst = sys.argv[1], sys.argv[2]
text = open(src).read()
cells = []
blocks = text.split("\n# %%")
blocks[0] = blocks[0].removeprefix("# %%")
for b in blocks:
    header, _, body = b.partition("\n")
    body = body.strip("\n")
    if header.strip().startswith("[markdown]"):
        lines = [l[2:] if l.startswith("# ") else l.lstrip("#") for l in body.split("\n")]
        cells.append(nbformat.v4.new_markdown_cell("\n".join(lines)))
    else:
        tags = header.strip()
        c = nbformat.v4.new_code_cell(body)
        if tags.startswith("tags="):
            c.metadata["tags"] = eval(tags[5:])
        cells.append(c)
nb = nbformat.v4.new_notebook(cells=cells)
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nb.metadata["language_info"] = {"name": "python"}
for i, c in enumerate(nb.cells):
    c["id"] = f"c{i:02d}"
nbformat.write(nb, dst)
