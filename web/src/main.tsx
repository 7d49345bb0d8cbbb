import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { BrowserRouter } from "react-router-dom";
import { App as AntApp, ConfigProvider } from "antd";
import { AuthProvider } from "./lib/auth";
import { App } from "./App";
import "./index.css";

// Colours chosen for contrast (WCAG AA, 4.5:1 on white): links, secondary text and danger.
const theme = {
  token: {
    colorPrimary: "#1f4e79",
    colorLink: "#1f4e79",
    colorError: "#b42318",
    colorTextSecondary: "rgba(0, 0, 0, 0.68)",
    colorTextDescription: "rgba(0, 0, 0, 0.68)",
    colorTextPlaceholder: "rgba(0, 0, 0, 0.6)",
    colorTextTertiary: "rgba(0, 0, 0, 0.65)",
    colorTextDisabled: "rgba(0, 0, 0, 0.56)",
    borderRadius: 6,
  },
  components: {
    Menu: { itemSelectedBg: "#e3ecf5", itemSelectedColor: "#1f4e79" },
  },
};

const root = document.getElementById("root");
if (root) {
  createRoot(root).render(
    <StrictMode>
      <ConfigProvider theme={theme}>
        <AntApp>
          <AuthProvider>
            <BrowserRouter>
              <App />
            </BrowserRouter>
          </AuthProvider>
        </AntApp>
      </ConfigProvider>
    </StrictMode>,
  );
}
