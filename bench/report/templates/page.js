window.addEventListener("load", () => {
  const ok = [...document.images].filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.imagesLoaded = ok; document.body.dataset.tables = document.querySelectorAll("table").length;
  // sortable tables: a click on a header sorts by that column (numbers by value), again to reverse
  const key = t => { const m = t.trim().replace("\u2212", "-").match(/^[-+]?[0-9]*[.]?[0-9]+(e[-+]?[0-9]+)?/i);
    return m ? parseFloat(m[0]) : t; };
  document.querySelectorAll("table").forEach(table => table.querySelectorAll("th").forEach((th, col) => {
    th.style.cursor = "pointer"; th.title = "sort";
    th.addEventListener("click", () => {
      const body = table.tBodies[0], rows = [...body.rows], dir = th.dataset.dir === "1" ? -1 : 1;
      rows.sort((a, b) => { const x = key(a.cells[col].textContent), y = key(b.cells[col].textContent);
        return (typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : typeof x === "number" ? -1 : 1) * dir; });
      th.dataset.dir = dir === 1 ? "1" : "-1"; rows.forEach(r => body.appendChild(r));
      document.body.dataset.sorted = (+(document.body.dataset.sorted || 0) + 1);
      document.body.dataset.firstRow = body.rows[0].cells[col].textContent;
    });
  }));
  if (location.hash === "#check-sort") document.querySelector("table th:nth-child(2)").click();  // the browser test's probe
});
