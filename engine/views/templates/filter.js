// filter the table by drug, kind, status and source (no framework: a change handler)
const selects = document.querySelectorAll("select[data-filter]");
function apply() {
  for (const row of document.querySelectorAll("tr.rule")) {
    row.hidden = [...selects].some(s => s.value && !row.dataset[s.dataset.filter].includes(s.dataset.filter === "drug" || s.dataset.filter === "source" ? " " + s.value + " " : s.value));
  }
}
selects.forEach(s => s.addEventListener("change", apply));
