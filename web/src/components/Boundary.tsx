import { Component, type ReactNode } from "react";
import { Alert, Button } from "antd";

/**
 * Catches what a page throws while rendering, and a part of the console that failed to load
 * (a node updated meanwhile serves other file names): says so and offers a reload instead
 * of a blank page.
 */
export class Boundary extends Component<{ children: ReactNode }, { error: Error | null }> {
  state = { error: null as Error | null };

  static getDerivedStateFromError(error: Error) {
    return { error };
  }

  render() {
    const { error } = this.state;
    if (!error) return this.props.children;
    const stale = /dynamically imported module|Importing a module script failed|preload/i.test(error.message);
    return (
      <Alert
        type="error"
        showIcon
        role="alert"
        style={{ margin: 24 }}
        message={stale ? "The console was updated" : "This page failed"}
        description={
          <>
            <div>{stale ? "Reload to get the new version." : error.message}</div>
            <Button style={{ marginTop: 8 }} onClick={() => window.location.reload()}>
              Reload
            </Button>
          </>
        }
      />
    );
  }
}
