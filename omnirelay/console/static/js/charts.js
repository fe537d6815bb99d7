// Chart.js (console/package.json, copied to /console/vendor/ by `make serve`) loaded on demand as a classic script.
// When the file is missing the promise gives null and pages show their tables alone.

const CHART_SRC = "/console/vendor/chart.umd.min.js";
let loading = null;

export function loadChartLibrary() {
  if (window.Chart) return Promise.resolve(window.Chart);
  if (!loading) {
    loading = new Promise((resolve) => {
      const script = document.createElement("script");
      script.src = CHART_SRC;
      script.onload = () => resolve(window.Chart || null);
      script.onerror = () => {
        loading = null; // try again on the next visit
        script.remove();
        resolve(null);
      };
      document.head.append(script);
    });
  }
  return loading;
}

// Colours cycle over a fixed palette so a model keeps its colour across the three charts.
const PALETTE = ["#2563eb", "#db2777", "#059669", "#d97706", "#7c3aed", "#0891b2", "#dc2626", "#4b5563"];

/** A stacked bar chart of one metric over time, one dataset per series (model or key). */
export function stackedBars(Chart, canvas, labels, series, metric, title) {
  const existing = Chart.getChart(canvas);
  if (existing) existing.destroy();
  return new Chart(canvas, {
    type: "bar",
    data: {
      labels,
      datasets: series.map((s, i) => ({
        label: s.name,
        data: s[metric],
        backgroundColor: PALETTE[i % PALETTE.length],
        stack: "all",
      })),
    },
    options: {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      plugins: { title: { display: true, text: title }, legend: { position: "bottom" } },
      scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } },
    },
  });
}
