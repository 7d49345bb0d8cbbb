import { useEffect, useMemo } from "react";
import { Link, useLocation } from "react-router-dom";
import { Layout, Typography } from "antd";
import { Marked } from "marked";
// The runbooks are docs/RUNBOOKS.md itself, built into the bundle: the alert rules link
// here (`<console>/runbooks#<alert name in lower case>`), so the page an alert opens is the
// one the repository holds, served by any node that still answers.
import source from "../../../docs/RUNBOOKS.md?raw";

/** The id a heading gets, as the alert rules' links spell it (GitHub's rule). */
export function slug(text: string): string {
  return text
    .toLowerCase()
    .trim()
    .replace(/<[^>]*>/g, "")
    .replace(/[^\p{L}\p{N}\s_-]/gu, "")
    .replace(/\s/g, "-");
}

function render(md: string): string {
  const marked = new Marked({
    renderer: {
      heading({ tokens, depth, text }) {
        return `<h${depth} id="${slug(text)}">${this.parser.parseInline(tokens)}</h${depth}>\n`;
      },
    },
  });
  return marked.parse(md, { async: false });
}

export default function Runbooks() {
  const html = useMemo(() => render(source), []);
  const { hash } = useLocation();
  useEffect(() => {
    if (hash) document.getElementById(decodeURIComponent(hash.slice(1)))?.scrollIntoView();
  }, [hash]);
  return (
    <Layout style={{ minHeight: "100vh", background: "#fff" }}>
      <Layout.Header style={{ display: "flex", alignItems: "center", gap: 16 }}>
        <Link to="/" style={{ color: "#fff", fontWeight: 700, fontSize: 20 }}>
          Stoa
        </Link>
        <Typography.Text style={{ color: "#fff" }}>Runbooks</Typography.Text>
      </Layout.Header>
      <main className="runbooks" style={{ maxWidth: 860, margin: "0 auto", padding: "24px 16px" }}>
        {/* Markdown of the repository, rendered at build time's content: no user input. */}
        <div dangerouslySetInnerHTML={{ __html: html }} />
      </main>
    </Layout>
  );
}
