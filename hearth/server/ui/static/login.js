// Posts the key once; the server answers with an HttpOnly session cookie.
const form = document.getElementById("login-form");
const input = document.getElementById("login-key");
const error = document.getElementById("login-error");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  error.textContent = "";
  const key = input.value.trim();
  if (!key) {
    error.textContent = "Enter an admin API key.";
    input.focus();
    return;
  }
  try {
    const response = await fetch("/ui/api/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ key }),
      credentials: "same-origin",
    });
    if (response.ok) {
      input.value = "";
      window.location.replace("/ui/");
      return;
    }
    const body = await response.json().catch(() => ({}));
    error.textContent = (body.error && body.error.message) || `Login failed (${response.status}).`;
  } catch (failure) {
    error.textContent = `Login failed: ${failure}`;
  }
  input.select();
});
input.focus();
