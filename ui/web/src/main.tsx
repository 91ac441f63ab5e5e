import { render } from "preact";
import { adoptTokenFromUrl } from "./api";
import { App } from "./app";
import "./style.css";

adoptTokenFromUrl();
const root = document.getElementById("app");
if (root) render(<App />, root);
