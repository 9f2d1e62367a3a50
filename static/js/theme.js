// The saved light/dark choice, applied before the first paint: a classic script
// loaded blocking from <head> (the CSP forbids inline ones). With no saved choice
// the stylesheet follows the system's preference. app.js has the toggle.
(function () {
  try {
    const theme = localStorage.getItem("theme");
    if (theme === "light" || theme === "dark") document.documentElement.dataset.theme = theme;
  } catch {
    // Storage refused (privacy settings): the system's preference applies.
  }
})();
